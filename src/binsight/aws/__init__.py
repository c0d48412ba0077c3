"""binsight on AWS: the local commands' configs launched as SageMaker jobs, endpoints and a Lambda gateway.

One module per responsibility: :mod:`session` (credentials, region, bucket and role checks), :mod:`api`
(every call recorded, dry-run, the resource ledger), :mod:`ledger`, :mod:`prices`, :mod:`images`,
:mod:`package` (the code that travels with a job or a model), :mod:`training`, :mod:`tuning`,
:mod:`endpoint`, :mod:`gateway`, :mod:`transform`, :mod:`iam`, :mod:`logs` and :mod:`cleanup`.
See docs/aws.md.
"""
