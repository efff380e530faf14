"""Code readers: frames to QR payloads (replay source; camera and scanner later)."""
