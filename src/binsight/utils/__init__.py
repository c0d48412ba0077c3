"""Small shared helpers: atomic I/O, run directories, progress bars."""
