"""``binsight review``: a small web app where people settle the bins an audit flagged, and the export of their
answers as training labels."""
