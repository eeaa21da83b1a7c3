"""What a scrape becomes: metric families, the `check` table/JSON, the textfile."""
