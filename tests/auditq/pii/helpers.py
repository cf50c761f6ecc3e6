"""Plain helpers of the personal-data tests."""

import base64
import os

KEY = base64.b64encode(os.urandom(32)).decode()  # AUDITQ_PII_KEY for the whole session
