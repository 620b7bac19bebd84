"""File names the report writes inside the folder it reports on."""

REPORT_NAME = "report.html"
ASSETS_NAME = "report_assets"  # charts (PNG); replaced on every run
