from sovereign_mcp.cli import main

raise SystemExit(main())
