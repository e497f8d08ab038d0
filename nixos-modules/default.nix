# NixOS modules for the snix stack: one per daemon plus the local-overlay
# wiring (castore.nix, store.nix, mount.nix, nix-daemon.nix,
# local-overlay.nix). They land with the deployment issue; until then this
# imports nothing.
{ ... }:
{
  imports = [ ];
}
