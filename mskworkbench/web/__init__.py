"""The browser viewer (``mskwb serve``): a trame-slicer application on the Lib logic."""
