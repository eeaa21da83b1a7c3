"""One scrape: run the collectors (scheduler), then the verdict; shared by every output."""

from .scraper import Scrape, Scraper

__all__ = ["Scrape", "Scraper"]
