import sys

from binsight.cli.main import main

sys.exit(main())
