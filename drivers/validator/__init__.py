"""Bill validators: the interface (``base``) and implementations (``sim``; eSSP, ID-003 later)."""
