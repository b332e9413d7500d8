"""Glue between htfl and the Ansible tree in ``deploy/``: paths, the device wheel, the runner.

The playbooks and roles live in the repository's ``deploy/`` directory (not in the wheel);
``htfl deploy`` runs them through ansible-runner (:mod:`htfl.workstation.deploy.runner`) with
the htfl wheel that :mod:`htfl.workstation.deploy.wheel` builds from this checkout.
"""
