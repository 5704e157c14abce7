from ._attnflow import *
from ._attnflow import __version__ as __version__
