"""A small OCI distribution client over httpx, for every controller that talks to registries
(the source controller's OCIRepository and OCI HelmRepository, the image automation's scans).

- ``reference``: the repository an ``oci://`` URL names;
- ``credentials``: credentials and TLS settings from a Secret;
- ``headers``: the ``WWW-Authenticate`` challenge parser and ``Link`` pagination;
- ``manifest``: manifests and indexes, and which image and layer are pulled;
- ``client``: ``RegistryClient``, pull access to one repository of a registry;
- ``errors``: what all of them raise.
"""
