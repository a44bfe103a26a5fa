"""The descriptor pool of the generated v2 messages: their own, not protobuf's default one.

Other packages register the same ``inference.*`` messages in the default pool from files of
other names (MLServer's ``dataplane.proto``) or other revisions (``tritonclient.grpc``), and
two definitions of one symbol in one pool stop the second import. On the wire only the
messages' bytes and the method paths count, so a pool of their own changes nothing there.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
