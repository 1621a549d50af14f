# rootfs.sh profile for flatnet's container image (make image): Python for the agent,
# nft and ip for the datapath's and the doctor's checks; flatnet itself, its PyPI
# dependencies and the CNI forwarder come in through the flatnet-install hook.
VARIANT=essential   # minbase less apt (~23 MB): nothing installs packages in a running image
PACKAGES=(python3 nftables iproute2)
HOOKS=(flatnet-install.sh)
