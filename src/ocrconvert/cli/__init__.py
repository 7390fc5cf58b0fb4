"""The ``ocrconvert`` command line: parse -> call the library -> render."""
