build/release/src/base/log.o: src/base/log.c src/base/log.h \
 src/base/buf.h src/base/clock.h src/base/error.h
src/base/log.h:
src/base/buf.h:
src/base/clock.h:
src/base/error.h:
