build/release/src/base/units.o: src/base/units.c src/base/units.h \
 src/base/error.h
src/base/units.h:
src/base/error.h:
