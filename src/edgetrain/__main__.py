import sys

try:
    from edgetrain.cli import main
except KeyboardInterrupt:  # Ctrl-C before the command line is even read
    print("edgetrain: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
