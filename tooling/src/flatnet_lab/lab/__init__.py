"""The lab: a multi-node flatnet cluster on one machine, built from network namespaces.

Public API (everything else in the package is private):
  manager.up(nodes=3, store="sqlite", progress=None) / status() / down()
  manager.exclusive()            hold the lab (tests, demos) while building/using it
  manager.install_service(["pod"])   Service VIP DNAT on every node to a pod elsewhere
  manager.exec_in("vm1", argv)   run a command in a lab host
  pods.add_pod(node, name, network) / del_pod(name) / exec_in_pod(name, argv)
  topology.default_topology(nodes)   the lab's shape as data (names, addresses)
"""
