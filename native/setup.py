"""auditq_pii, the drain's encryption of personal fields in C (see auditq_pii.c).

Built by ``pip install -r requirements.txt`` (a line ``./native``); needs a C compiler, the
Python headers and OpenSSL's (Debian: libssl-dev). Optional: where it cannot be built, pip
still installs and auditq encrypts in Python, more slowly (auditq/pii/writer.py logs it).
"""

from setuptools import Extension, setup

setup(
    name="auditq-pii",
    version="1.0.0",  # pip rebuilds a local directory on every install: no bump needed
    ext_modules=[
        Extension(
            "auditq_pii",
            ["auditq_pii.c"],
            libraries=["crypto"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        ),
    ],
)
