from pipeline.refresh.cli import main

raise SystemExit(main())
