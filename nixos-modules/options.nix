# Option constructors every component module shares.
{ lib, top }:
{
  # the component's package, defaulting to services.snix.package
  package = binary: lib.mkOption {
    type = lib.types.package;
    default = top.package;
    defaultText = lib.literalExpression "config.services.snix.package";
    description = "Package providing `${binary}`.";
  };

  extraArgs = command: lib.mkOption {
    type = lib.types.listOf lib.types.str;
    default = [ ];
    description = "Extra arguments to `${command}`.";
  };
}
