"""Write: one acquisition's images into HDF5, in a writer process (file layout, compression, masks)."""
