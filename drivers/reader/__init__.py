"""Code readers: camera frames or a serial scanner's text to QR payloads.

``base`` holds the contracts (CodeReader, Decoder, FrameSource); ``camera_reader`` decodes
frames from a source (``drivers.camera``) in one worker thread; ``scanner`` reads a serial 2D
scanner module; ``replay`` watches a directory of images (simulation, the demo); ``decoders``
and ``preprocess`` are the decoders measured by ``kiosk bench qr``.
"""
