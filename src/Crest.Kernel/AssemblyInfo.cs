using System.Runtime.CompilerServices;

// Raw interop is blittable only: no marshalling stubs, nothing for the AOT compiler to guess.
[assembly: DisableRuntimeMarshalling]
