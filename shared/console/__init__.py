"""What the staff console (console/) reads and does, kept out of the web layer:
accounts and sessions, the audit trail of patient-data views, the board, the
conversations list, what needs a human, and the reports. console/ only parses
requests and renders these results."""
