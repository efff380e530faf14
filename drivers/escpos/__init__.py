"""ESC/POS receipt printers over serial: ``codes`` (command and status tables), ``encoder``
(Document -> bytes), ``status`` (DLE EOT / GS r / ASB replies -> PrinterStatus), ``client``
(:class:`~drivers.escpos.client.EscposPrinter`, a ``ReceiptPrinter``) and ``sim`` (a printer
on a pty that parses the bytes back and renders receipts)."""
