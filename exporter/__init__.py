"""dkms-exporter: for the kernel this host boots next, does every out-of-tree module work?"""

__version__ = "0.1.0"
