import sys

from sam2edge.cli import main

sys.exit(main())
