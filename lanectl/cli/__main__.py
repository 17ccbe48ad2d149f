from lanectl.cli import main

raise SystemExit(main())
