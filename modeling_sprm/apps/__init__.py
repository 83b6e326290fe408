"""The applications built on the library: the ``sprm`` command line (`cli`), the Gradio demo (`demo`), Hub
artifacts and ``sprm push`` (`hub`) and the checkpoint converters (`conversion`)."""
