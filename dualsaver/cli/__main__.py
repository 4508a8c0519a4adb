from dualsaver.cli import main

raise SystemExit(main())
