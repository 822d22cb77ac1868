from fastmask.cli import main

raise SystemExit(main())
