# Without flakes: `nix-build -A snix.snix-store`, `nix-build -A snix.store
# -A snix.nix-daemon`, … as the how-to (local-overlay.md) writes them.
{ pkgs ? import <nixpkgs> { } }:
let
  p = import ./nixos-modules/packages.nix { inherit pkgs; };
in
{
  snix = p // {
    # the how-to's short names
    store = p.snix-store;
    castore = p.snix-castore;
    mount = p.snix-mount;
  };
}
