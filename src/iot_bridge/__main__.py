"""``python -m iot_bridge`` runs the CLI."""

from iot_bridge.entrypoints.cli import main

raise SystemExit(main())
