"""HTML pages. Each module defines ``bp``; ``create_app`` registers it, and
``dashboard.nav.NAV`` lists the pages of the navigation bar.

A page renders its full template on a normal request and only its partial (the fragment
its ``hx-get`` polls) when flask-htmx reports an htmx request.
"""
