from pipeline.process.cli import main

raise SystemExit(main())
