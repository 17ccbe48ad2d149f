"""Command line: `lanectl run | demo | check-config | records | outbox | status | open | balance | topup | fee | sign | remote | install-service`.

One module per command group; each adds its subcommands to the parser (`add_parser`) and only parses input
and hands it on (to the daemon's composition root, the config loader or the control client):

    main.py          the parser and `main` (the console script `lanectl`, and `python -m lanectl`)
    run.py           run: start the daemon; a failed start is one line and a sysexits code
    demo.py          demo: launches the demo that lives with the rig (python -m hil.demo)
    check_config.py  check-config: validate a configuration directory
    control.py       what the control-socket commands share: socket path, call, money and operator text
    views.py         records, outbox, status, balance: read the running daemon
    actions.py       open, topup: audited operator actions through the running daemon
    fee.py           fee: price a stay with the configured tariffs (fee_report.py: its output)
    sign.py          sign: compute or check a platform signature
    install.py       install-service: the service user, /etc/lanectl, /var/lib/lanectl and the systemd unit
"""

from lanectl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
