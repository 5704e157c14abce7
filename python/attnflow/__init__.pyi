from . import attention as attention
from . import flow as flow
from . import icl as icl
from . import io as io
from . import measure as measure
from . import model as model
from . import ot as ot
from . import run as run
from . import theory as theory
from .flow import *
from .icl import *
from .io import *
from .measure import *
from .model import *
from .ot import *
from .run import *
from .theory import *
from .attention import *
from ._attnflow import __version__ as __version__
from ._attnflow import num_threads as num_threads
from ._attnflow import set_num_threads as set_num_threads
from ._attnflow import cuda_available as cuda_available
from ._attnflow import cuda_compiled as cuda_compiled
from ._attnflow import cuda_device_description as cuda_device_description
from ._attnflow import current_device as current_device
from ._attnflow import set_device as set_device
