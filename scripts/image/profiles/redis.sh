# rootfs.sh profile for the Redis image of the CRI Redis scenario (scripts/image/redis.sh,
# `flatnet lab redis --runtime cri`): Debian's redis-server, which is Sentinel too
# (`redis-server --sentinel`; Debian's redis-sentinel package only adds a symlink and a
# systemd unit, so it is left out). redis-tools comes in as redis-server's dependency.
VARIANT=essential   # no apt: nothing installs packages in a running image
PACKAGES=(redis-server)
HOOKS=(redis-slim.sh)
