"""Receipt printers: the interface (``base``) and implementations (``sim``; ESC/POS later)."""
