"""A small OCI distribution client for OCIRepository, over httpx.

- ``reference``: the repository an ``oci://`` URL names, and which tag or digest an
  ``OCIRepositoryRef`` names;
- ``credentials``: credentials and TLS settings from a Secret;
- ``headers``: the ``WWW-Authenticate`` challenge parser and ``Link`` pagination;
- ``manifest``: manifests and indexes, and which image and layer are pulled;
- ``client``: ``RegistryClient``, pull access to one repository of a registry;
- ``errors``: what all of them raise.
"""
