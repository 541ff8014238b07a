"""E-mail: SMTP sending, IMAP polling and sender authentication."""
