from pipeline.artifacts.manage import main

raise SystemExit(main())
