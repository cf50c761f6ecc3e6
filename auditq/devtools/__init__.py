"""Tooling for running auditq on one machine, kept out of the library producers import:
``dev`` (``python -m auditq dev``: everything, nothing configured), ``embedded`` (real Redis
and PostgreSQL servers from wheels, also used by the tests and benchmarks), ``processes``
(children that go down with us), ``devstate`` (dev's ports and generated secrets) and
``demo`` (realistic traffic)."""
