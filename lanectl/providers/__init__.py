"""The payment platforms (Bolink, XFT, tdzn) as the daemon assembles them.

    wiring.py   which platforms a site configures: their clients, exit providers, publishers, callback
                handlers and routes, built in one place for the composition root (lanectl/bootstrap.py, app.py)

Issue 16 item 2 moves each platform here as one package (codec, client, inbound handlers, config section).
"""
