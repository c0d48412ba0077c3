"""Inventory audit: score many bins against their records, rank them by the chance that the record is wrong,
and write ranked reports (``binsight audit``). The per-bin work is :func:`binsight.audit.bins.audit_bin`."""
