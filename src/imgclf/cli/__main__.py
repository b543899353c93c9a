from imgclf.cli import entry

entry()
