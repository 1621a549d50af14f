# rootfs.sh profile for the kernel test tier's VM (scripts/vm/build.sh, make test-kernel):
# python3 runs flatnet and pytest (flatnet's Python dependencies come from .venv at boot);
# kmod/mount for the VM's /init; the rest are the tools the in-VM tests and bench drive.
# scripts/vm/build.sh adds Debian's kernel modules and the /init after this recipe.
VARIANT=essential
PACKAGES=(python3 iproute2 nftables kmod mount procps iputils-ping tcpdump iperf3
          netcat-openbsd socat conntrack)
HOOKS=()
