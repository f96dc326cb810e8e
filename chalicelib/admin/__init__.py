"""The Cognito-protected admin API: token checks (``auth``), key lifecycle (``keys``), accounting (``accounting``)."""
