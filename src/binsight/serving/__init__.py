"""The model server: everything that runs inside one ``binsight serve`` process (see docs/serving.md for the
module layout). Starting and supervising servers is :mod:`binsight.endpoints`'s job."""
