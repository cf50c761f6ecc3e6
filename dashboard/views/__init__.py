"""HTML pages. Each module defines ``bp`` and, to appear in the nav bar, ``NAV``.

A page renders its full template on a normal request and only its partial (the fragment
its ``hx-get`` polls) when flask-htmx reports an htmx request.
"""
