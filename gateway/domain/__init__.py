"""Pure gateway logic: no I/O, clocks passed in."""
