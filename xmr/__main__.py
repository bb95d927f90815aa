from xmr.cli import main

raise SystemExit(main())
